"Soak: many requests at concurrency 16 with 1% bad ones: zero 5xx, bounded RSS, every good row in the prediction log. MLOPS_SOAK_REQUESTS sets the count (default 2000; the README figure is from 20,000)."
import json, os, random, signal, time
from concurrent.futures import ThreadPoolExecutor
import requests
from servicekit import rss_mb, running_service
from mlops_lib.predlog import read_log

N = int(os.environ.get('MLOPS_SOAK_REQUESTS', '2000'))
CONCURRENCY = 16


def soak(url, n, concurrency=CONCURRENCY, seed=0, prefix='soak'):
    "Send n one-row requests from `concurrency` clients, 1% of them bad (malformed JSON, a text age, a wrong content type); return status counts and good ids."
    rnd = random.Random(seed)
    kinds = ['bad' if rnd.random() < 0.01 else 'good' for _ in range(n)]
    def send(k):
        s, codes, good = requests.Session(), {}, []
        for i in range(k, n, concurrency):
            if kinds[i] == 'good':
                body, ct = json.dumps({'dataframe_records': [{'Gender': 'Male' if i % 2 else 'Female', 'Age': 18 + i % 50, 'AnnualSalary': 20000 + i}]}), 'application/json'
            else: body, ct = [('{"dataframe_records": [', 'application/json'), (json.dumps({'dataframe_records': [{'Gender': 'Male', 'Age': 'old', 'AnnualSalary': 1}]}), 'application/json'),
                              ('Age=3', 'text/plain')][i % 3]
            try: r = s.post(f'{url}/invocations', data=body, headers={'Content-Type': ct, 'X-Request-ID': f'{prefix}-{i}'}, timeout=60); c = r.status_code
            except requests.RequestException: c = 0
            codes[c] = codes.get(c, 0) + 1
            if c == 200: good.append(f'{prefix}-{i}')
        return codes, good
    with ThreadPoolExecutor(concurrency) as ex: res = list(ex.map(send, range(concurrency)))
    codes = {}
    for c, _ in res:
        for k, v in c.items(): codes[k] = codes.get(k, 0) + v
    return codes, [g for _, gs in res for g in gs], kinds.count('good')


def test_soak(smoke_model, tmp_path):
    out = tmp_path/'outputs'
    with running_service(out, '--tracking-uri', smoke_model['uri']) as (url, proc):
        soak(url, 300, seed=1, prefix='warm')  # warm-up
        rss0 = rss_mb(proc.pid)
        t0 = time.perf_counter()
        codes, good, n_good = soak(url, N)
        secs = time.perf_counter() - t0
        rss1 = rss_mb(proc.pid)
        print(f"soak: {N} requests at concurrency {CONCURRENCY} in {secs:.1f} s ({N / secs:.0f}/s): {codes}; RSS {rss0:.0f} MB after warm-up, {rss1:.0f} MB after")
        proc.send_signal(signal.SIGTERM); assert proc.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after its graceful shutdown
    assert not any(c >= 500 or c == 0 for c in codes), codes
    assert codes.get(200) == n_good and sum(codes.values()) == N and sum(v for k, v in codes.items() if 400 <= k < 500) == N - n_good
    assert rss1 <= 1.2 * rss0, (rss0, rss1)
    log = read_log(out/'serving'/'smoke')
    ids = log.request_id[log.request_id.str.startswith('soak-')]
    assert len(ids) == len(good) == n_good and set(ids) == set(good)
