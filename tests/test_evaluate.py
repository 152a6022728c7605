"Tests of mlops_lib.evaluate: metrics against scikit-learn, prediction frames, scorers, figures, permutation importance."
import math, warnings
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from sklearn import metrics as skm
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlops_lib.params import CLASSIFICATION_METRICS, REGRESSION_METRICS
from mlops_lib.evaluate import (SCORING, classification_metrics, evaluation_figures, importance_figure,
                                permutation_importance_frame, predict_frame, regression_metrics, score_model,
                                sklearn_scoring)


def _frame(X): return pd.DataFrame(X, columns=[f'x{i}' for i in range(X.shape[1])])


@pytest.fixture(scope='module')
def binary():
    "String labels 'No'/'Yes', two informative columns and a pure-noise column."
    X, y = make_classification(400, 3, n_informative=2, n_redundant=0, random_state=0)
    X = _frame(X).assign(noise=np.random.default_rng(1).normal(size=len(X)))
    y = pd.Series(np.where(y == 1, 'Yes', 'No'), name='target')
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y), X, y


@pytest.fixture(scope='module')
def multiclass():
    X, y = make_classification(300, 5, n_informative=3, n_redundant=0, n_classes=3, random_state=0)
    X, y = _frame(X), pd.Series(np.array(['a', 'b', 'c'])[y])
    return LogisticRegression().fit(X, y), X, y


@pytest.fixture(scope='module')
def regression():
    X, y = make_regression(400, 3, n_informative=2, noise=5, random_state=0, shuffle=False)
    X = _frame(X).assign(noise=np.random.default_rng(1).normal(size=len(X)))
    y = pd.Series(y + 100)
    return Ridge().fit(X, y), X, y


# --- metrics -------------------------------------------------------------------------------------------------------

def test_classification_metrics_perfect():
    m = classification_metrics([0, 1, 1, 0], np.array([[1., 0.], [0., 1.], [0., 1.], [1., 0.]]), [0, 1])
    assert list(m) == list(CLASSIFICATION_METRICS)
    assert (m['roc_auc'], m['pr_auc'], m['f1'], m['accuracy'], m['brier']) == (1.0, 1.0, 1.0, 1.0, 0.0)
    assert m['log_loss'] < 1e-6
    assert all(type(v) is float for v in m.values())


def test_classification_metrics_binary_string_labels(binary):
    model, X, y = binary
    p = model.predict_proba(X)
    m = classification_metrics(y, p, model.classes_)
    assert list(model.classes_) == ['No', 'Yes']
    assert m['roc_auc'] == pytest.approx(skm.roc_auc_score(y == 'Yes', p[:, 1]))
    assert m['pr_auc'] == pytest.approx(skm.average_precision_score(y, p[:, 1], pos_label='Yes'))
    assert m['f1'] == pytest.approx(skm.f1_score(y, model.predict(X), pos_label='Yes'))
    assert m['accuracy'] == pytest.approx(model.score(X, y))
    assert m['log_loss'] == pytest.approx(skm.log_loss(y, p))
    assert m['brier'] == pytest.approx(skm.brier_score_loss(y, p[:, 1], pos_label='Yes'))
    assert score_model(model, X, y, 'classification') == m


def test_classification_metrics_positive_class_is_classes_1():
    "Int labels other than 0/1: the positive class is classes[1] whatever its value."
    y, p = np.array([3, 7, 7, 3, 7]), np.array([[.8, .2], [.3, .7], [.6, .4], [.4, .6], [.1, .9]])
    m = classification_metrics(y, p, [3, 7])
    assert m['f1'] == pytest.approx(skm.f1_score(y, np.array([3, 7])[p.argmax(1)], pos_label=7))
    assert m['pr_auc'] == pytest.approx(skm.average_precision_score(y, p[:, 1], pos_label=7))


def test_classification_metrics_multiclass(multiclass):
    model, X, y = multiclass
    p = model.predict_proba(X)
    m = classification_metrics(y, p, model.classes_)
    assert m['roc_auc'] == pytest.approx(skm.roc_auc_score(y, p, multi_class='ovr', average='weighted'))
    assert m['pr_auc'] == pytest.approx(skm.average_precision_score(y, p, average='macro'))
    assert m['f1'] == pytest.approx(skm.f1_score(y, model.predict(X), average='weighted'))
    assert m['accuracy'] == pytest.approx(model.score(X, y))
    assert m['log_loss'] == pytest.approx(skm.log_loss(y, p))
    assert m['brier'] == pytest.approx(skm.brier_score_loss(y, p, labels=model.classes_))
    assert all(type(v) is float for v in m.values())


def test_classification_metrics_single_class_is_nan_not_crash(binary, multiclass):
    model, X, y = binary
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        m = score_model(model, X[y == 'No'], y[y == 'No'], 'classification')
    assert math.isnan(m['roc_auc']) and math.isnan(m['pr_auc'])
    assert all(not math.isnan(m[k]) for k in ('f1', 'accuracy', 'log_loss', 'brier'))
    model3, X3, y3 = multiclass
    m3 = score_model(model3, X3[y3 == 'a'], y3[y3 == 'a'], 'classification')
    assert math.isnan(m3['roc_auc']) and math.isnan(m3['pr_auc'])
    two = y3 != 'c'  # multiclass model, a test set missing one class: scored over the classes present
    assert 0.5 < score_model(model3, X3[two], y3[two], 'classification')['roc_auc'] <= 1.0


def test_classification_metrics_errors():
    with pytest.raises(ValueError, match=r"labels \['Maybe'\] that are not in classes \['No', 'Yes'\]"):
        classification_metrics(['Maybe'], [[.5, .5]], ['No', 'Yes'])
    with pytest.raises(ValueError, match=r"proba must have shape"):
        classification_metrics(['No', 'Yes'], [[.5, .5]], ['No', 'Yes'])
    with pytest.raises(ValueError, match="task must be 'classification' or 'regression'"):
        score_model(None, None, None, 'ranking')


def test_regression_metrics(regression):
    assert regression_metrics([1, 2, 3], [1, 2, 3]) == dict(rmse=0.0, mae=0.0, r2=1.0, mape=0.0)
    model, X, y = regression
    m = score_model(model, X, y, 'regression')
    pred = model.predict(X)
    assert list(m) == list(REGRESSION_METRICS)
    assert m['rmse'] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert m['mae'] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert m['r2'] == pytest.approx(model.score(X, y))
    assert m['mape'] == pytest.approx(np.mean(np.abs((y - pred) / y)))
    assert all(type(v) is float for v in m.values())


# --- prediction frames ---------------------------------------------------------------------------------------------

def test_predict_frame(binary, multiclass, regression):
    model, X, y = binary
    Xi = X.iloc[:6].set_axis(list('abcdef'))
    f = predict_frame(model, Xi, 'classification')
    assert list(f.columns) == ['prediction', 'proba_No', 'proba_Yes', 'probability']
    assert list(f.index) == list('abcdef')
    assert list(f.prediction) == list(model.predict(Xi))
    np.testing.assert_allclose(f[['proba_No', 'proba_Yes']].to_numpy(), model.predict_proba(Xi))
    np.testing.assert_allclose(f.probability, model.predict_proba(Xi).max(1))
    model3, X3, _ = multiclass
    assert list(predict_frame(model3, X3.iloc[:3], 'classification').columns) == ['prediction', 'proba_a', 'proba_b', 'proba_c', 'probability']
    reg, Xr, _ = regression
    fr = predict_frame(reg, Xr.iloc[5:9], 'regression')
    assert list(fr.columns) == ['prediction'] and list(fr.index) == [5, 6, 7, 8]
    np.testing.assert_allclose(fr.prediction, reg.predict(Xr.iloc[5:9]))


# --- scorers -------------------------------------------------------------------------------------------------------

def test_scoring_map():
    assert SCORING == dict(roc_auc='roc_auc', pr_auc='average_precision', f1='f1', accuracy='accuracy',
                           log_loss='neg_log_loss', brier='neg_brier_score', rmse='neg_root_mean_squared_error',
                           mae='neg_mean_absolute_error', r2='r2', mape='neg_mean_absolute_percentage_error')
    assert sklearn_scoring('roc_auc', 'classification', n_classes=3) == 'roc_auc_ovr_weighted'
    assert sklearn_scoring('f1', 'classification', n_classes=3) == 'f1_weighted'
    assert sklearn_scoring('f1', 'classification', pos_label=1) == 'f1'
    assert sklearn_scoring('mape', 'regression') == 'neg_mean_absolute_percentage_error'
    with pytest.raises(ValueError, match="metric must be one of rmse, mae, r2, mape for a regression task, got 'roc_auc'"):
        sklearn_scoring('roc_auc', 'regression')


@pytest.mark.parametrize('metric', CLASSIFICATION_METRICS)
def test_scorers_agree_with_metrics(metric, binary, multiclass):
    "Every scorer works with string labels and multiclass and equals our metric (up to sign)."
    for model, X, y in (binary, multiclass):
        n = len(model.classes_)
        scorer = skm.check_scoring(model, scoring=sklearn_scoring(metric, 'classification', n, model.classes_[1] if n == 2 else None))
        assert abs(scorer(model, X, y)) == pytest.approx(score_model(model, X, y, 'classification')[metric])


# --- permutation importance ----------------------------------------------------------------------------------------

@pytest.mark.parametrize('metric', ['roc_auc', 'pr_auc', 'f1', 'brier'])
def test_permutation_importance_binary_ranks_noise_last(metric, binary):
    model, X, y = binary
    imp = permutation_importance_frame(model, X, y, 'classification', metric, n_repeats=3)
    assert list(imp.columns) == ['feature', 'importance_mean', 'importance_std']
    assert sorted(imp.feature) == sorted(X.columns)
    assert imp.importance_mean.is_monotonic_decreasing
    assert imp.feature.iloc[-1] == 'noise' or imp.feature.tolist().index('noise') > imp.feature.tolist().index('x0')
    assert imp.importance_mean.iloc[0] > 0.05


def test_permutation_importance_regression_and_determinism(regression):
    model, X, y = regression
    imp = permutation_importance_frame(model, X, y, 'regression', 'rmse', n_repeats=3, seed=3, max_rows=150)
    assert set(imp.feature[:2]) == {'x0', 'x1'} and imp.feature.iloc[-1] in ('noise', 'x2')
    assert imp.set_index('feature').loc['x0', 'importance_mean'] > 10 * abs(imp.set_index('feature').loc['noise', 'importance_mean'])
    pd.testing.assert_frame_equal(imp, permutation_importance_frame(model, X, y, 'regression', 'rmse', n_repeats=3, seed=3, max_rows=150))
    assert permutation_importance_frame(model, X, y, 'regression', 'mape', n_repeats=2).feature.iloc[-1] in ('noise', 'x2')


def test_permutation_importance_multiclass(multiclass):
    model, X, y = multiclass
    imp = permutation_importance_frame(model, X, y, 'classification', 'pr_auc', n_repeats=2, max_rows=200)
    assert len(imp) == X.shape[1] and imp.importance_mean.is_monotonic_decreasing


def test_importance_figure(binary):
    model, X, y = binary
    imp = permutation_importance_frame(model, X, y, 'classification', 'roc_auc', n_repeats=2)
    fig = importance_figure(imp, top=2)
    assert isinstance(fig, go.Figure) and len(fig.data) == 1 and fig.data[0].orientation == 'h'
    assert list(fig.data[0].y) == imp.feature[:2].tolist()[::-1]  # most important at the top
    np.testing.assert_allclose(fig.data[0].error_x.array, imp.importance_std[:2].to_numpy()[::-1])


# --- figures -------------------------------------------------------------------------------------------------------

def test_figures_binary(binary):
    model, X, y = binary
    figs = evaluation_figures(model, X, y, 'classification')
    assert list(figs) == ['roc_curve', 'pr_curve', 'confusion_matrix', 'calibration']
    assert all(isinstance(f, go.Figure) for f in figs.values())
    auc = score_model(model, X, y, 'classification')['roc_auc']
    roc = figs['roc_curve']
    assert f'AUC = {auc:.3f}' in roc.layout.title.text
    assert [t.name for t in roc.data][0] == 'chance' and list(roc.data[0].x) == [0, 1] and len(roc.data) == 2
    assert len(figs['pr_curve'].data) == 1
    cm = figs['confusion_matrix'].data[0]
    assert cm.type == 'heatmap' and cm.z.sum() == len(y) and list(cm.x) == ['No', 'Yes']
    np.testing.assert_array_equal(cm.z, skm.confusion_matrix(y, model.predict(X), labels=['No', 'Yes']))
    cal = figs['calibration']
    assert len(cal.data) == 2 and list(cal.data[0].y) == [0, 1] and 2 <= len(cal.data[1].x) <= 10
    assert 'quantile' in cal.layout.title.text


def test_figures_multiclass_and_single_class(binary, multiclass):
    model, X, y = multiclass
    figs = evaluation_figures(model, X, y, 'classification')
    assert len(figs['roc_curve'].data) == 1 + 3 and len(figs['pr_curve'].data) == 3
    assert figs['confusion_matrix'].data[0].z.shape == (3, 3) and len(figs['calibration'].data) == 1 + 3
    model, X, y = binary
    one = evaluation_figures(model, X[y == 'Yes'], y[y == 'Yes'], 'classification')
    assert 'undefined' in one['roc_curve'].layout.title.text and 'undefined' in one['pr_curve'].layout.title.text


def test_figures_regression(regression):
    model, X, y = regression
    figs = evaluation_figures(model, X, y, 'regression', max_points=100, seed=1)
    assert list(figs) == ['pred_vs_actual', 'residuals']
    pva = figs['pred_vs_actual']
    assert len(pva.data[0].x) == 100 and pva.data[1].name == 'y = x' and pva.data[1].x == pva.data[1].y
    res = figs['residuals']
    assert [t.type for t in res.data] == ['scatter', 'histogram'] and len(res.data[1].x) == len(y)
    again = evaluation_figures(model, X, y, 'regression', max_points=100, seed=1)['pred_vs_actual']
    np.testing.assert_array_equal(pva.data[0].x, again.data[0].x)
    assert len(evaluation_figures(model, X, y, 'regression')['pred_vs_actual'].data[0].x) == len(y)  # <= 5,000: all rows
