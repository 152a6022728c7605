"Helpers for the service tests: start `mlops serve` on a free loopback port, read a process's RSS."
import subprocess, tempfile
from contextlib import contextmanager
from conftest import BIN, ROOT, mlops_env
from mlops_lib.procs import free_port, stop_process, wait_until_ready


@contextmanager
def running_service(outputs, *args, params='params/smoke.yaml', timeout=180, **env):
    "`mlops serve` with MLOPS_OUTPUTS=outputs; yields (url, process); its process group is stopped at the end, even on failure."
    port = free_port()
    # The server's output goes to a file: a pipe nobody reads fills after 64 KB and then blocks the server.
    with tempfile.TemporaryFile('w+') as log:
        p = subprocess.Popen([str(BIN/'mlops'), 'serve', '--params', str(ROOT/params), '--port', str(port), *map(str, args)], cwd=ROOT,
                             env=mlops_env(outputs, **env), stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        url = f'http://127.0.0.1:{port}'
        try:
            try: wait_until_ready(url, timeout=timeout, proc=p)
            except Exception:
                stop_process(p); log.seek(0); raise AssertionError(f"mlops serve did not start:\n{log.read()[-3000:]}")
            yield url, p
        finally:
            stop_process(p)


def rss_mb(pid: int) -> float:
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'): return int(line.split()[1]) / 1024
    return float('nan')
