/**
 * Memory checks of one model (lib/limits.ts checkFits): the model's state
 * when it is built, then the activations each time a call brings a new
 * largest batch x seq (the core grows its activations then), so a request
 * that cannot fit fails with OUT_OF_MEMORY and what would fit, before any
 * native work.
 */
import { GPTConfig } from '../config';
import type { DeviceName, PrecisionName } from '../device';
import { checkFits } from '../limits';

export class MemoryFit {
  /** Estimated bytes the native model holds (state + activations for maxRows). */
  private held: number;
  /** Largest batch * seq the core has grown its activations for, and that call's shape. */
  private maxRows = 0;
  private maxShape = { batch: 0, seq: 0 };
  /** Whether the core holds its gradient accumulation buffer (held for good once made). */
  private accumulation = false;

  /**
   * Checks that the model's state fits (throws OutOfMemoryError if not).
   * `preset` names the preset the config came from, for the message.
   */
  constructor(
    private readonly config: GPTConfig,
    private readonly device: DeviceName,
    private readonly precision: PrecisionName,
    preset?: string,
  ) {
    this.held = checkFits({ config: preset ?? config, device, precision }).total;
  }

  /** Checks a call of batch x seq (with `logits`: one that returns them) against what is held. */
  check(batch: number, seq: number, logits: boolean): void {
    const rows = batch * seq;
    if (rows <= this.maxRows && !logits) return;
    const e = checkFits({
      config: this.config,
      device: this.device,
      precision: this.precision,
      batch,
      seq,
      logits,
      accumulation: this.accumulation,
      held: this.held,
    });
    if (rows > this.maxRows) {
      this.maxRows = rows;
      this.maxShape = { batch, seq };
      this.held = e.total - e.logits;
    }
  }

  /**
   * Checks a later micro-batch of one step (forwardBackward again before
   * step/zeroGrad): the core then makes its gradient accumulation buffer, one
   * more gradient-sized buffer, kept for the model's life.
   */
  checkAccumulation(): void {
    if (this.accumulation || this.maxRows === 0) return;
    const e = checkFits({
      config: this.config,
      device: this.device,
      precision: this.precision,
      batch: this.maxShape.batch,
      seq: this.maxShape.seq,
      accumulation: true,
      held: this.held,
    });
    this.accumulation = true;
    this.held = e.total - e.logits;
  }
}
