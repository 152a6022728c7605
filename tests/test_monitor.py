"Drift monitoring: calibration (false alarms on fresh samples), detection, edge cases and the HTML report."
import re
import numpy as np
import pandas as pd
import pytest
from mlops_lib.params import MonitorParams
from mlops_lib.drift import (categorical_drift, dataset_drift, drift_figures, drift_html, drift_metrics, drift_report,
                             feature_drift, numeric_drift, prediction_drift, psi)

CFG = MonitorParams()
NUM, CAT = ['n1', 'n2', 'n3', 'n4'], ['c1', 'c2', 'c3']
SD = {'n1': 1.0, 'n2': np.sqrt((np.exp(.25) - 1) * np.exp(.25)), 'n3': 14.43, 'n4': np.sqrt(8)}


def gen(n: int, seed: int, shift: float=0.0, newcat: float=0.0) -> pd.DataFrame:
    "4 numeric + 3 categorical features; `shift` moves every numeric mean by shift*std; `newcat` share of c1 becomes 'NEW'."
    r = np.random.default_rng(seed)
    d = {'n1': r.normal(0, 1, n), 'n2': r.lognormal(0, .5, n), 'n3': r.integers(0, 50, n) + 0.0, 'n4': r.gamma(2, 2, n)}
    d = {k: v + shift * SD[k] for k, v in d.items()}
    d['c1'] = r.choice(list('abc'), n, p=[.6, .3, .1])
    d['c2'] = r.choice(list('wxyz'), n)
    d['c3'] = r.choice(['u', 'v'], n, p=[.8, .2])
    df = pd.DataFrame(d)
    if newcat: df['c1'] = df['c1'].where(r.random(n) > newcat, 'NEW')
    return df


def alarms(n_ref: int, n_cur: int, seeds=range(20), **kw) -> tuple[int, float]:
    "Dataset-drift verdicts and mean per-feature drift share over `seeds` fresh (reference, current) pairs."
    res = [drift_report(gen(n_ref, 1000 + s), gen(n_cur, 5000 + s, **kw), NUM, CAT, CFG)['summary'] for s in seeds]
    return sum(r['dataset_drift'] for r in res), float(np.mean([r['share_drifted'] for r in res]))


# --- calibration: fresh samples of the same generator -------------------------------------------------------------

@pytest.mark.parametrize('n_ref,n_cur', [(1000, 500), (20000, 500), (20000, 100)])
def test_false_alarm_rate(n_ref, n_cur):
    "Same distribution: dataset drift in at most 2 of 20 seeds and per-feature alarms near the 5% level."
    n, share = alarms(n_ref, n_cur)
    assert n <= 2, f'dataset drift on {n}/20 same-distribution batches (ref={n_ref}, cur={n_cur})'
    assert share <= 0.1, f'per-feature false alarm share {share:.3f}'


@pytest.mark.parametrize('n_ref,n_cur', [(1000, 500), (20000, 500)])
def test_detects_shift_on_half_the_features(n_ref, n_cur):
    n, share = alarms(n_ref, n_cur, seeds=range(5), shift=0.5)
    assert n == 5 and share >= 4 / 7


@pytest.mark.parametrize('n_ref', [1000, 20000])
def test_detects_new_category(n_ref):
    for s in range(5):
        t = feature_drift(gen(n_ref, s), gen(500, 100 + s, newcat=0.1), NUM, CAT, CFG)
        assert t.set_index('feature').loc['c1', 'drifted'], t


def test_chi2_is_two_sample():
    "Reference sampling noise counts: equal-size samples of one distribution are not flagged more than ~5% of the time."
    r = np.random.default_rng(0)
    p = [categorical_drift(pd.Series(r.choice(list('abcd'), 1000)), pd.Series(r.choice(list('abcd'), 1000)), CFG)['p_value']
         for _ in range(200)]
    assert np.mean(np.array(p) < CFG.p_value) <= 0.1


# --- regimes and thresholds come from the params --------------------------------------------------------------------

def test_regime_follows_stat_test_max_rows():
    ref, cur = gen(1000, 1), gen(300, 2)
    assert numeric_drift(ref.n1, cur.n1, CFG)['test'] == 'ks'
    assert categorical_drift(ref.c1, cur.c1, CFG)['test'] == 'chi2'
    small = MonitorParams(stat_test_max_rows=999)
    assert numeric_drift(ref.n1, cur.n1, small)['test'] == 'wasserstein'
    assert categorical_drift(ref.c1, cur.c1, small)['test'] == 'jensenshannon'


def test_thresholds_come_from_params():
    t = feature_drift(gen(1000, 1), gen(500, 2, shift=0.5), NUM, CAT, CFG)
    assert dataset_drift(t, MonitorParams(share=1.0))['dataset_drift'] is False
    assert dataset_drift(t, MonitorParams(share=0.5))['dataset_drift'] is True
    assert (t.psi_flag == (t.psi >= CFG.psi)).all()


# --- edge cases -----------------------------------------------------------------------------------------------------

def test_missing_values():
    ref, cur = gen(1000, 1), gen(500, 2)
    r = np.random.default_rng(3)
    holed = cur.assign(n1=cur.n1.where(r.random(500) > 0.1), c2=cur.c2.where(r.random(500) > 0.02))
    t = feature_drift(ref, holed, NUM, CAT, CFG).set_index('feature')
    assert not t.loc['n1', 'drifted'] and t.loc['n1', 'missing_cur'] > 0.05
    surge = cur.assign(c2=cur.c2.where(r.random(500) > 0.3))
    assert categorical_drift(ref.c2, surge.c2, CFG)['drifted']
    assert numeric_drift(ref.n1, pd.Series([np.nan] * 10), CFG)['drifted']


def test_constant_column():
    for n in (500, 5000):
        c = pd.Series([3.0] * n, name='k')
        same, moved = numeric_drift(c, c.iloc[:100], CFG), numeric_drift(c, c.iloc[:100] + 1, CFG)
        assert not same['drifted'] and moved['drifted'] and np.isfinite(same['psi'])
        assert not categorical_drift(c.astype(str), c.iloc[:100].astype(str), CFG)['drifted']


def test_empty_and_missing_columns_are_clear_errors():
    ref = gen(200, 1)
    with pytest.raises(ValueError, match='batch_3.csv: has 0 rows'):
        feature_drift(ref, ref.iloc[:0], NUM, CAT, CFG, source='batch_3.csv')
    with pytest.raises(ValueError, match=r"batch_3.csv: missing column\(s\) 'c2'"):
        drift_report(ref, ref.drop(columns='c2'), NUM, CAT, CFG, source='batch_3.csv')
    with pytest.raises(ValueError, match="column 'n1' should be numeric but holds 'abc'"):
        feature_drift(ref, ref.assign(n1=['abc'] + [1.0] * 199), NUM, CAT, CFG)


def test_int_codes_read_back_as_float_are_not_new_categories():
    r = np.random.default_rng(0)
    ref, cur = pd.Series(r.integers(0, 4, 800)), pd.Series(r.integers(0, 4, 400)).astype(float)
    cur.iloc[0] = np.nan
    assert not categorical_drift(ref, cur, CFG)['drifted']


def test_psi_orders_shifts():
    r = np.random.default_rng(0)
    ref = pd.Series(r.normal(0, 1, 5000))
    vals = [psi(ref, pd.Series(r.normal(m, 1, 2000)), 'numeric') for m in (0, 0.25, 1)]
    assert vals[0] < 0.05 < vals[1] < 0.2 < vals[2]


# --- report, metrics, figures, HTML ---------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def report():
    ref, cur = gen(1000, 1).assign(y=lambda d: (d.n1 > 0).astype(int)), gen(500, 2, shift=0.5).assign(y=lambda d: (d.n1 > 0).astype(int))
    r = np.random.default_rng(0)
    rp, cp = pd.Series(r.random(1000)), pd.Series(r.random(500) ** 2)
    rep = drift_report(ref, cur, NUM, CAT, CFG, rp, cp, target='y', task='classification')
    return rep, ref, cur, rp, cp


def test_report_and_metrics(report):
    rep, *_ = report
    assert rep['summary']['dataset_drift'] and rep['prediction']['drifted'] and rep['target']['drifted']
    m = drift_metrics(rep)
    assert {'share_drifted', 'n_drifted', 'dataset_drift', 'prediction_drift', 'target_drift', 'psi_max', 'psi_n1'} <= set(m)
    assert all(isinstance(v, float) and np.isfinite(v) for v in m.values())
    assert all(re.fullmatch(r'[A-Za-z0-9_./ -]+', k) for k in m)


def test_metric_names_are_sanitised():
    ref = gen(300, 1).rename(columns={'n1': 'prix (€)', 'n2': 'a//b'})
    m = drift_metrics(drift_report(ref, gen(200, 2).rename(columns={'n1': 'prix (€)', 'n2': 'a//b'}), ['prix (€)', 'a//b'], [], CFG))
    assert 'psi_prix ___' in m and 'psi_a__b' in m


def test_prediction_kinds():
    r = np.random.default_rng(0)
    assert prediction_drift(pd.Series(r.random(300)), pd.Series(r.random(300)), None, CFG)['kind'] == 'numeric'
    assert prediction_drift(pd.Series(['Yes', 'No'] * 150), pd.Series(['Yes'] * 300), None, CFG)['drifted']


def test_html_is_self_contained(report):
    rep, ref, cur, rp, cp = report
    figs = drift_figures(rep, ref, cur, top=3, ref_pred=rp, cur_pred=cp)
    assert {'drift_overview', 'target', 'prediction'} <= set(figs) and sum(k.startswith('dist:') for k in figs) == 3
    page = drift_html(rep, figs, 'Drift <test>')
    assert not re.search(r'<script[^>]*\bsrc=', page), 'the page loads a script from elsewhere'
    assert not re.search(r'<link[^>]*\bhref=["\']?https?:', page)
    assert page.count('* plotly.js v') == 1, 'plotly.js must be embedded exactly once'
    assert '&lt;test&gt;' in page and 'Dataset drift' in page
