// The engine's one process-wide thread pool.
//
// Why not OpenMP: concurrent calls from several AsyncWorkers would each start
// a team and oversubscribe the cores, and idle libgomp threads spin. This pool
// runs one parallel job at a time (jobs from different callers queue on a
// mutex), so two models training at once share the cores instead of fighting.
//
// Determinism contract (docs/ARCHITECTURE.md "Threads"): callers split work into tasks that
// write disjoint outputs, and do any reduction over per-task partial results
// in a fixed order afterwards. Which thread runs which task then never changes
// the numbers, so results are bitwise identical for any pool size.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>
#include <atomic>

namespace gpt {

class ThreadPool {
 public:
  // fn(task, thread): task in [0, n_tasks), thread in [0, size()).
  using TaskFn = std::function<void(int64_t task, int thread)>;

  static ThreadPool& global();

  int size() const { return n_threads_; }
  // Resizes the pool (n >= 1). Waits for the running job.
  void resize(int n);
  // Runs fn for every task and returns when all are done. Called from inside a
  // task, it runs the tasks inline on the calling thread (no nesting). The
  // first exception thrown by a task is rethrown here after all tasks stop.
  void parallel_for(int64_t n_tasks, const TaskFn& fn);

  ~ThreadPool();

 private:
  ThreadPool();
  void start(int n);
  void stop();
  void worker_loop(int id);
  void run_tasks(int thread);

  int n_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex job_mutex_;  // one job at a time
  std::mutex mu_;
  std::condition_variable cv_start_, cv_done_;
  uint64_t generation_ = 0;
  bool quit_ = false;
  const TaskFn* fn_ = nullptr;
  int64_t n_tasks_ = 0;
  std::atomic<int64_t> next_{0};
  int active_ = 0;
  std::exception_ptr error_;
  std::mutex error_mu_;
};

// Default size: GPT_ENGINE_THREADS if set and valid, else hardware threads.
int default_thread_count();

}  // namespace gpt
