"""An unchanged `mlops run` (every step reused) against MLflow's own floor, measured in the same run.

    .venv/bin/python benchmarks/cache.py [--repeat 3] [--params params/smoke.yaml]

In a temporary project root (a copy of the step notebooks and the params, MLOPS_ROOT) it runs the pipeline once, then
times `repeat` unchanged runs. The baseline is what any process that records to this store pays: a child that imports
mlflow, opens the same store and reads the registry. The issue's figure is 5 s of wall clock for the unchanged run.
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def timed(cmd: list, env: dict, cwd: Path) -> tuple[float, float]:
    "Wall and CPU seconds (user + system of the child) of one command, which must succeed."
    c0, t0 = os.times(), time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    c1 = os.times()
    return time.perf_counter() - t0, (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--params', default='params/smoke.yaml')
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix='bench-cache-') as d:
        root = Path(d)
        shutil.copytree(ROOT/'nbs'/'pipeline', root/'nbs'/'pipeline')
        (root/'params').mkdir()
        (root/'params'/'p.yaml').write_text(yaml.safe_dump(yaml.safe_load((ROOT/a.params).read_text())))
        env = {k: v for k, v in os.environ.items() if k not in ('MLFLOW_TRACKING_URI', 'MLFLOW_REGISTRY_URI')}
        env.update(MLOPS_ROOT=str(root), MLOPS_OUTPUTS=str(root/'outputs'))
        run = [str(BIN/'mlops'), 'run', '--params', 'params/p.yaml', '--quiet']
        first, _ = timed(run, env, ROOT)
        uri = f"sqlite:///{root/'outputs'/'mlflow'/'mlflow.db'}"
        floor = [sys.executable, '-c', f"import mlflow; c = mlflow.MlflowClient({uri!r}); "
                 "c.search_experiments(max_results=1); c.search_registered_models(max_results=1)"]
        runs, floors = [], []
        for _ in range(a.repeat):   # interleaved, so both see the same machine
            floors.append(timed(floor, env, ROOT))
            runs.append(timed(run, env, ROOT))
    med = lambda xs, i: statistics.median(x[i] for x in xs)
    print(f"\n## Unchanged `mlops run` ({a.params}; median of {a.repeat}; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores)\n")
    print(f"{'':<58}{'wall':>8}{'CPU':>8}")
    print(f"{'first run (every step executed)':<58}{first:>7.2f}s{'':>8}")
    print(f"{'unchanged run (every step reused)':<58}{med(runs, 0):>7.2f}s{med(runs, 1):>7.2f}s")
    print(f"{'baseline: import mlflow + open the store + read registry':<58}{med(floors, 0):>7.2f}s{med(floors, 1):>7.2f}s")
    print(f"{'ratio unchanged / baseline':<58}{med(runs, 0) / med(floors, 0):>7.2f}x{med(runs, 1) / med(floors, 1):>7.2f}x")
    print(f"\ngoal: unchanged run <= 5 s wall: {'met' if med(runs, 0) <= 5 else 'not met'} ({med(runs, 0):.2f} s)")


if __name__ == '__main__':
    main()
