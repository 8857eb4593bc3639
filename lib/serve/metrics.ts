/**
 * The server's counters, gauges and histograms, written in Prometheus'
 * text exposition format (version 0.0.4) for GET /metrics.
 */

type Labels = Record<string, string>;

function labelText(labels: Labels): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return '';
  const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
  return `{${keys.map((k) => `${k}="${esc(labels[k])}"`).join(',')}}`;
}

function numText(x: number): string {
  if (x === Infinity) return '+Inf';
  if (x === -Infinity) return '-Inf';
  if (Number.isNaN(x)) return 'NaN';
  return String(x);
}

/** A counter or gauge with optional labels. */
export class Series {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge',
    /** labeled series show nothing until a value is added; the others show 0 */
    readonly labeled = false,
  ) {}

  add(delta: number, labels: Labels = {}): void {
    const key = labelText(labels);
    const v = this.values.get(key);
    if (v) v.value += delta;
    else this.values.set(key, { labels, value: delta });
  }

  set(value: number, labels: Labels = {}): void {
    this.values.set(labelText(labels), { labels, value });
  }

  get(labels: Labels = {}): number {
    return this.values.get(labelText(labels))?.value ?? 0;
  }

  text(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    if (this.values.size === 0 && !this.labeled) lines.push(`${this.name} 0`);
    for (const { labels, value } of this.values.values()) lines.push(`${this.name}${labelText(labels)} ${numText(value)}`);
    return lines.join('\n');
  }
}

/** A histogram with fixed upper bounds (cumulative buckets, sum and count). */
export class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(
    readonly name: string,
    readonly help: string,
    readonly bounds: readonly number[],
  ) {
    this.counts = bounds.map(() => 0);
  }

  observe(x: number): void {
    for (let i = 0; i < this.bounds.length; i++) if (x <= this.bounds[i]) this.counts[i]++;
    this.sum += x;
    this.count++;
  }

  get total(): number {
    return this.count;
  }

  text(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    this.bounds.forEach((b, i) => lines.push(`${this.name}_bucket{le="${numText(b)}"} ${this.counts[i]}`));
    lines.push(`${this.name}_bucket{le="+Inf"} ${this.count}`, `${this.name}_sum ${numText(this.sum)}`, `${this.name}_count ${this.count}`);
    return lines.join('\n');
  }
}

const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Everything GET /metrics reports. */
export class ServerMetrics {
  readonly requests = new Series('gpt_engine_requests_total', 'HTTP requests answered, by path and status code', 'counter', true);
  readonly promptTokens = new Series('gpt_engine_prompt_tokens_total', 'Prompt tokens of completed completion requests', 'counter');
  readonly completionTokens = new Series('gpt_engine_completion_tokens_total', 'Tokens generated for completion requests', 'counter');
  readonly aborted = new Series('gpt_engine_requests_aborted_total', 'Completion requests stopped early, by reason (client disconnected, shutdown)', 'counter', true);
  readonly rejected = new Series('gpt_engine_requests_rejected_total', 'Completion requests refused because the queue was full (429)', 'counter');
  readonly queueDepth = new Series('gpt_engine_queue_depth', "Completion requests waiting: for the server's admission, or inside the model's batch", 'gauge');
  readonly running = new Series('gpt_engine_running_requests', 'Completion requests admitted to the model', 'gauge');
  readonly batchSize = new Series('gpt_engine_batch_size', 'Sequences in the model\'s running decode batch (requests x n), up to max_batch', 'gauge');
  readonly maxBatch = new Series('gpt_engine_max_batch', 'Most sequences admitted to the model at once', 'gauge');
  readonly ttft = new Histogram('gpt_engine_time_to_first_token_seconds', 'From the request arriving to its first generated token', SECONDS);
  readonly latency = new Histogram('gpt_engine_request_duration_seconds', 'From a completion request arriving to its last byte', SECONDS);
  readonly queueWait = new Histogram('gpt_engine_queue_wait_seconds', 'Time a completion request waited for a decode slot', SECONDS);
  readonly decodeSteps = new Series('gpt_engine_decode_steps_total', 'Batched decode steps the model ran (one native call each)', 'counter');
  readonly decodeStepSequences = new Series('gpt_engine_decode_step_sequences_total', 'Sequences those steps advanced (divided by the steps: the mean batch)', 'counter');
  readonly decodeSlots = new Series('gpt_engine_decode_slots', "Slots of the model's decode session (kept for reuse)", 'gauge');
  readonly cacheBytes = new Series('gpt_engine_kv_cache_bytes', "Bytes of the model's key/value cache", 'gauge');
  readonly info = new Series('gpt_engine_model_info', 'The served model (always 1)', 'gauge', true);

  text(): string {
    const rss = new Series('process_resident_memory_bytes', 'Resident memory of the server process', 'gauge');
    rss.set(process.memoryUsage.rss());
    const all = [
      this.info,
      this.requests,
      this.promptTokens,
      this.completionTokens,
      this.aborted,
      this.rejected,
      this.queueDepth,
      this.running,
      this.batchSize,
      this.maxBatch,
      this.decodeSteps,
      this.decodeStepSequences,
      this.decodeSlots,
      this.cacheBytes,
      this.ttft,
      this.latency,
      this.queueWait,
      rss,
    ];
    return all.map((m) => m.text()).join('\n') + '\n';
  }
}
