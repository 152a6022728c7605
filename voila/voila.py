# Voila settings for the mlops_lib dashboard (`mlops dashboard`, see mlops_lib.app.serve_dashboard).
# serve_dashboard runs: python -m voila nbs/dashboard.ipynb --no-browser --port=N --Voila.ip=HOST --Voila.port_retries=0
#                       --Voila.config_file_paths=<root>/voila
# so this file is the only Voila config that applies (no user-level voila.json/voila.py is searched).
import os

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

# People who never open a notebook use this page: show no tracebacks and no code.
c.VoilaConfiguration.show_tracebacks = False
c.VoilaConfiguration.strip_sources = True
# Serve no file from the notebook folder through /voila/files/ (the default allows images there). Serving the single
# notebook already means there is no /voila/tree, /voila/render or /voila/api/contents; any other path redirects to
# /voila/files/<path>, which this turns into 403.
c.VoilaConfiguration.file_allowlist = []
c.VoilaConfiguration.file_denylist = ['.*']
# One kernel per page view, taken from a pool of kernels that ran the notebook ahead up to `wait_for_visitor()` (imports,
# the champion loaded, the dashboard built once), refilled after each use. The cell after it builds the dashboard when
# the request arrives, so a promotion made while the server runs shows on the next page (see mlops_lib.app.wait_for_visitor
# for why this used to be flaky). Progressive rendering stays off (Voila refuses it with preheating; a failing cell
# cannot leave half a page). $MLOPS_DASHBOARD_POOL=0 turns preheating off. One kernel, not two: two kernels heating at once on
# two cores made the first page later (start -> form 12.6 s vs 10.6 s) for the same second visitor (2.4 s), as the pool
# refills between visitors.
_pool = int(os.environ.get('MLOPS_DASHBOARD_POOL') or 1)
c.VoilaConfiguration.preheat_kernel = _pool > 0
c.VoilaConfiguration.default_pool_size = max(_pool, 0)
# Batch uploads travel over the kernel websocket as one message: allow the upload limit plus headroom (tornado's default
# is 10 MiB); the app itself refuses files above MLOPS_UPLOAD_MB with a message.
_upload_mb = float(os.environ.get('MLOPS_UPLOAD_MB') or 20)
c.Voila.tornado_settings = {'websocket_max_message_size': int((_upload_mb * 1.5 + 8) * 2**20)}
# Voila's lab template links Font Awesome from a CDN; the 'mlops' template (voila/jupyter/voila/templates/mlops, found
# through JUPYTER_PATH=<root>/voila/jupyter set by serve_dashboard) drops those links: the page makes no outside request.
c.VoilaConfiguration.template = 'mlops'
# jupytext's lab extension is installed in the venv but fails to load in Voila (and is useless there).
c.VoilaConfiguration.extension_denylist = ['jupyterlab-jupytext']
