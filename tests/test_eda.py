"Tests of mlops_lib.eda: metrics, figures and the self-contained HTML report on synthetic frames."
import re, time
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from mlops_lib.eda import eda_figures, eda_metrics, feature_scores
from mlops_lib.report import html_report, write_report

METRIC_NAME = re.compile(r'[A-Za-z0-9_]+')
SCRIPT_SRC = re.compile(r'<script[^>]*\bsrc\s*=', re.I)
PLOTLY_JS = re.compile(r'plotly\.js v\d')


def _mixed(n=500, seed=0):
    "Binary 'Yes'/'No' target, missing values, a boolean, a constant and an all-missing column."
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    df = pd.DataFrame({'x': x, 'noise': rng.normal(size=n), 'const': 7.0, 'empty': np.nan,
                       'count': rng.integers(0, 5, n), 'city': rng.choice(['Oslo', 'Rome', 'Lima'], n),
                       'member': rng.random(n) < 0.4,
                       'Purchased': np.where(x + rng.normal(scale=0.7, size=n) > 0.3, 'Yes', 'No')})
    df.loc[::7, 'noise'] = np.nan
    df.loc[::11, 'city'] = None
    df['member'] = df.member.astype(object).where(np.arange(n) % 13 != 0, None)  # booleans with missing values
    return df


def _wide(n=20_000, p=200, seed=1):
    "Like the 'transactions' sample: 200 numeric features, ~10% positives."
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * rng.uniform(0.5, 20, p)
    df = pd.DataFrame(X, columns=[f'var_{i}' for i in range(p)])
    logit = X[:, 3]/5 - X[:, 17]/10 - 2.3
    df['target'] = (rng.random(n) < 1/(1 + np.exp(-logit))).astype(int)
    return df


def _assert_self_contained(page: str, n_figures: int):
    assert page.startswith('<!DOCTYPE html>') and page.rstrip().endswith('</html>')
    assert SCRIPT_SRC.findall(page) == []            # no script loaded from anywhere (no CDN, no network)
    assert '<link' not in page                       # no external stylesheet either
    assert len(PLOTLY_JS.findall(page)) == (1 if n_figures else 0)  # plotly.js embedded exactly once
    assert page.count('Plotly.newPlot(') == n_figures
    ids = re.findall(r'<div id="([^"]+)" class="plotly-graph-div"', page)
    assert len(ids) == len(set(ids)) == n_figures


def test_metrics_binary_string_target():
    df = _mixed()
    m = eda_metrics(df, 'Purchased', 'classification')
    assert all(METRIC_NAME.fullmatch(k) and isinstance(v, float) for k, v in m.items())
    assert (m['rows'], m['n_features'], m['n_numeric'], m['n_categorical']) == (500, 7, 5, 2)
    assert m['n_constant'] == 2                      # 'const' and the all-missing 'empty'
    assert m['missing_share'] == pytest.approx(df.isna().to_numpy().mean())
    assert m['max_missing_share'] == 1.0
    assert m['positive_rate'] == pytest.approx((df.Purchased == 'Yes').mean())
    assert m['n_classes'] == 2 and m['duplicate_rows'] == 0


def test_metrics_duplicates_multiclass_regression():
    df = _mixed()
    assert eda_metrics(pd.concat([df, df.iloc[:9]]), 'Purchased', 'classification')['duplicate_rows'] == 9
    df['tier'] = np.where(df.x > 1, 'gold', np.where(df.x > -1, 'silver', 'bronze'))
    mc = eda_metrics(df.drop(columns='Purchased'), 'tier', 'classification')
    assert mc['n_classes'] == 3 and 'positive_rate' not in mc
    assert mc['majority_share'] == pytest.approx(df.tier.value_counts(normalize=True).iloc[0])
    df['price'] = 10 + 3*df.x
    r = eda_metrics(df.drop(columns=['Purchased', 'tier']), 'price', 'regression')
    assert r['target_mean'] == pytest.approx(df.price.mean()) and r['target_max'] == pytest.approx(df.price.max())
    assert {'target_std', 'target_min'} <= set(r) and 'n_classes' not in r


def test_bad_inputs_name_the_problem():
    df = _mixed()
    with pytest.raises(ValueError, match="target column 'y' not found"): eda_metrics(df, 'y', 'classification')
    with pytest.raises(ValueError, match="task: expected"): eda_figures(df, 'Purchased', 'ranking')
    with pytest.raises(ValueError, match="regression target must be numeric"): eda_metrics(df, 'Purchased', 'regression')
    with pytest.raises(ValueError, match=r"numeric: columns \['nope'\] not found"): eda_figures(df, 'Purchased', 'classification', ['nope'], [])
    with pytest.raises(ValueError, match="column 'city' is listed as numeric"): eda_figures(df, 'Purchased', 'classification', ['city'], [])


def test_figures_binary_mixed():
    df = _mixed()
    figs = eda_figures(df, 'Purchased', 'classification', max_features=4)
    assert list(figs)[:4] == ['target', 'missing', 'correlation', 'feature:x']
    assert len(figs) == 7 and all(isinstance(f, go.Figure) for f in figs.values())
    assert sorted(figs['target'].data[0].x) == ['No', 'Yes']
    assert list(figs['missing'].data[0].x) == ['empty', 'noise', 'city', 'member']  # worst first
    corr = figs['correlation'].data[0]
    assert list(corr.x)[-1] == 'Purchased' and {'x', 'const'} <= set(corr.x)
    # the boolean column works whether the caller calls it numeric or categorical
    for num, cat in ([['x', 'member'], ['city']], [['x'], ['member', 'city']]):
        f = eda_figures(df, 'Purchased', 'classification', num, cat, max_features=3)
        assert 'feature:member' in f


def test_feature_ranking_finds_signal():
    df = _mixed()
    s = feature_scores(df, 'Purchased', 'classification')
    assert s.feature[0] == 'x' and s.score.between(0, 1).all()
    assert s.set_index('feature').score[['const', 'empty']].tolist() == [0.0, 0.0]


def test_regression_and_no_numeric_features():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({'a': rng.normal(size=5000), 'shop': rng.choice(list('abcdefgh'), 5000), 'b': rng.normal(size=5000)})
    df['price'] = 2*df.a + (df.shop == 'a')*5 + rng.normal(size=5000)
    figs = eda_figures(df, 'price', 'regression', seed=5)
    assert list(figs)[3:5] == ['feature:a', 'feature:shop']
    scatter = figs['feature:a'].data[1]
    assert scatter.type == 'scatter' and len(scatter.x) == 2000           # sampled subset
    assert figs['feature:a'].to_json() == eda_figures(df, 'price', 'regression', seed=5)['feature:a'].to_json()
    assert figs['feature:a'].to_json() != eda_figures(df, 'price', 'regression', seed=6)['feature:a'].to_json()
    cats = eda_figures(df[['shop', 'price']], 'price', 'regression')
    assert list(cats) == ['target', 'missing', 'correlation', 'feature:shop']
    nonum = eda_figures(_mixed()[['city', 'member', 'Purchased']], 'Purchased', 'classification')
    assert list(nonum)[3:] in (['feature:city', 'feature:member'], ['feature:member', 'feature:city'])
    _assert_self_contained(html_report(nonum, 'no numeric features'), len(nonum))


def test_multiclass_does_not_crash():
    df = _mixed()
    df['tier'] = np.where(df.x > 1, 'gold', np.where(df.x > -1, 'silver', 'bronze'))
    figs = eda_figures(df.drop(columns='Purchased'), 'tier', 'classification')
    assert 'tier' not in list(figs['correlation'].data[0].x) and list(figs)[3] == 'feature:x'


def test_missing_target_values_are_left_out():
    df = _mixed()
    df.loc[::5, 'Purchased'] = None
    m = eda_metrics(df, 'Purchased', 'classification')
    assert m['target_missing_share'] == pytest.approx(0.2) and m['n_classes'] == 2
    figs = eda_figures(df, 'Purchased', 'classification')
    assert figs['target'].data[0].y.sum() == 400 and 'missing' in figs['target'].layout.title.text


def test_report_self_contained_and_written(tmp_path):
    df = _mixed()
    figs = eda_figures(df, 'Purchased', 'classification', max_features=3)
    m = eda_metrics(df, 'Purchased', 'classification')
    page = html_report(figs, 'Car <purchase> EDA', metrics=m, tables={'Feature ranking': feature_scores(df, 'Purchased', 'classification')})
    _assert_self_contained(page, len(figs))
    assert '<h1>Car &lt;purchase&gt; EDA</h1>' in page and '<th>positive_rate</th>' in page and '<h2>Feature ranking</h2>' in page
    assert all(f'<h2>{k}</h2>' in page for k in figs)
    assert page == html_report(figs, 'Car <purchase> EDA', metrics=m, tables={'Feature ranking': feature_scores(df, 'Purchased', 'classification')})
    out = write_report(page, tmp_path/'run'/'eda.html')
    assert out == tmp_path/'run'/'eda.html' and out.read_text(encoding='utf-8') == page
    assert [p.name for p in out.parent.iterdir()] == ['eda.html']      # no temporary file left behind
    assert html_report({}, 'empty').count('<script') == 0


def test_wide_dataset_is_fast_and_small(tmp_path):
    df = _wide()
    t = time.perf_counter()
    m = eda_metrics(df, 'target', 'classification')
    figs = eda_figures(df, 'target', 'classification', seed=0)
    page = html_report(figs, 'transactions', metrics=m)
    took = time.perf_counter() - t
    size = write_report(page, tmp_path/'eda.html').stat().st_size
    print(f'20,000 x 200: metrics + figures + report in {took:.2f}s, HTML {size/1e6:.2f} MB')
    assert took < 15, took                     # ~2-3 s on a quiet machine; generous for loaded CI
    assert size < 8e6, size                    # plotly.js (~4.8 MB) + aggregated figures
    assert len(figs) == 15 and {'feature:var_3', 'feature:var_17'} <= set(list(figs)[3:5])
    assert len(figs['correlation'].data[0].x) == 25  # top 24 features + the target
    _assert_self_contained(page, len(figs))
