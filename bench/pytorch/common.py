"""Shared pieces of the PyTorch twins of `gpt-engine bench --with-pytorch`.

Each twin reads one JSON document on stdin (the cases gpt-engine measured:
same shapes, same precisions), times them the same way (warm-up runs, then
repeats until the count or the per-case time budget is reached, at least
two), and prints one JSON document on stdout. FLOPs are not counted here:
gpt-engine divides the FLOPs of lib/flops.ts by these times, so both sides
use one formula. Logs go to stderr.
"""
import contextlib
import json
import sys
import time


def read_input():
    return json.loads(sys.stdin.read())


def setup(inp):
    """Imports torch, pins the thread count to gpt-engine's, returns (torch, device)."""
    import torch

    threads = int(inp.get("threads", 2))
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process
    device = inp.get("device", "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("device cuda asked for but torch sees no GPU")
    torch.manual_seed(0)
    return torch, torch.device(device)


def sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def stat(samples):
    s = sorted(samples)
    n = len(s)
    median = s[(n - 1) // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    return {"median": median, "min": s[0], "max": s[-1], "samples": list(samples)}


def repeat(fn, inp, torch, device):
    """fn's results: warm-up calls, then repeats within the budget (at least 2); time_ms when fn is what is timed."""
    warmup = int(inp.get("warmup", 1))
    repeats = int(inp.get("repeats", 3))
    budget = float(inp.get("budget_ms", 10000))
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        out.append(fn())
        if len(out) >= min(2, repeats) and (time.perf_counter() - start) * 1000 > budget:
            break
    return out


def time_ms(fn, inp, torch, device):
    """ms per call of fn: warm-up, then repeats within the budget (at least 2)."""

    def once():
        t0 = time.perf_counter()
        fn()
        sync(torch, device)
        return (time.perf_counter() - t0) * 1000

    return stat(repeat(once, inp, torch, device))


def emit(doc):
    sys.stdout.write(json.dumps(doc))
    sys.stdout.write("\n")
    sys.stdout.flush()


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def error_text(e):
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


@contextlib.contextmanager
def errors_into(row):
    """Runs the with-block for one case; an exception becomes row["error"] and the next case still runs."""
    try:
        yield row
    except Exception as e:  # noqa: BLE001 - reported per case
        row["error"] = error_text(e)


def emit_results(torch, results, **doc):
    """The twin's one JSON document: doc's fields, the torch version and threads, the rows."""
    emit({**doc, "torch": torch.__version__, "threads": torch.get_num_threads(), "results": results})
