#include "threadpool.h"

#include <cstdlib>
#include <string>

namespace gpt {

namespace {
thread_local bool t_inside_task = false;
thread_local int t_thread_id = 0;
}

int default_thread_count() {
  if (const char* s = std::getenv("GPT_ENGINE_THREADS")) {
    char* end = nullptr;
    long v = std::strtol(s, &end, 10);
    if (end != s && *end == '\0' && v >= 1 && v <= 1024) return static_cast<int>(v);
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}

ThreadPool& ThreadPool::global() {
  // Leaked on purpose: joining threads from a static destructor during process
  // exit (or addon unload in a worker) can deadlock.
  static ThreadPool* pool = new ThreadPool();
  return *pool;
}

ThreadPool::ThreadPool() { start(default_thread_count()); }

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::start(int n) {
  n_threads_ = n < 1 ? 1 : n;
  quit_ = false;
  // New workers start with seen = 0; a generation left over from before a
  // resize would send them into a stale job and unbalance active_ (deadlock).
  generation_ = 0;
  // Thread 0 is the caller of parallel_for; workers are 1..n-1.
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    quit_ = true;
  }
  cv_start_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::resize(int n) {
  std::lock_guard<std::mutex> job(job_mutex_);
  if (n < 1) n = 1;
  if (n == n_threads_) return;
  stop();
  start(n);
}

void ThreadPool::run_tasks(int thread) {
  t_inside_task = true;
  t_thread_id = thread;
  for (;;) {
    int64_t t = next_.fetch_add(1, std::memory_order_relaxed);
    if (t >= n_tasks_) break;
    try {
      (*fn_)(t, thread);
    } catch (...) {
      std::lock_guard<std::mutex> lk(error_mu_);
      if (!error_) error_ = std::current_exception();
      next_.store(n_tasks_, std::memory_order_relaxed);  // stop handing out tasks
    }
  }
  t_inside_task = false;
}

void ThreadPool::worker_loop(int id) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_start_.wait(lk, [&] { return quit_ || generation_ != seen; });
      if (quit_) return;
      seen = generation_;
    }
    run_tasks(id);
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (--active_ == 0) cv_done_.notify_all();
    }
  }
}

void ThreadPool::parallel_for(int64_t n_tasks, const TaskFn& fn) {
  if (n_tasks <= 0) return;
  if (t_inside_task) {
    // Nested call: run inline on this thread, under this thread's id, so
    // per-thread scratch stays private to it.
    int id = t_thread_id;
    for (int64_t t = 0; t < n_tasks; ++t) fn(t, id);
    return;
  }
  if (n_tasks == 1 || n_threads_ == 1) {
    std::lock_guard<std::mutex> job(job_mutex_);
    t_inside_task = true;
    t_thread_id = 0;
    try {
      for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
    } catch (...) {
      t_inside_task = false;
      throw;
    }
    t_inside_task = false;
    return;
  }
  std::lock_guard<std::mutex> job(job_mutex_);
  error_ = nullptr;
  fn_ = &fn;
  n_tasks_ = n_tasks;
  next_.store(0);
  {
    std::lock_guard<std::mutex> lk(mu_);
    active_ = n_threads_ - 1;
    ++generation_;
  }
  cv_start_.notify_all();
  run_tasks(0);
  {
    std::unique_lock<std::mutex> lk(mu_);
    cv_done_.wait(lk, [&] { return active_ == 0; });
  }
  fn_ = nullptr;
  if (error_) {
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

}  // namespace gpt
