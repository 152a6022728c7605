"The environment files agree with settings.ini, and the package installs what it declares."
import configparser, importlib.metadata as md, re, shlex
from pathlib import Path
import yaml

ROOT = Path(__file__).resolve().parent.parent


def settings() -> configparser.SectionProxy:
    c = configparser.ConfigParser(delimiters=['=']); c.read(ROOT/'settings.ini'); return c['DEFAULT']


def pins(key: str) -> dict[str, str]:
    out = {}
    for r in shlex.split(settings().get(key, '')):
        m = re.fullmatch(r'([A-Za-z0-9_.\-]+)==([^\s;]+)', r)
        assert m, f"settings.ini {key}: '{r}' is not pinned with =="
        out[canon(m[1])] = m[2]
    return out


def canon(name: str) -> str: return re.sub(r'[-_.]+', '-', name).lower()   # PEP 503: pip freeze writes prometheus_client


def all_pins() -> dict[str, str]: return {**pins('requirements'), **pins('dev_requirements'), **pins('examples_requirements')}


def test_nbdev_2_is_pinned():
    assert all_pins()['nbdev'].startswith('2.'), "settings.ini means nbdev 2 (nbdev 3 refuses it)"


def test_environment_yml_matches_settings():
    env = yaml.safe_load((ROOT/'environment.yml').read_text())
    assert 'python=3.11' in env['dependencies']
    pip = next(d['pip'] for d in env['dependencies'] if isinstance(d, dict))
    env_pins = {canon(k): v for k, v in (p.split('==') for p in pip if '==' in p)}
    assert env_pins == all_pins(), f"environment.yml and settings.ini disagree: {set(env_pins.items()) ^ set(all_pins().items())}"
    assert '-e .' in pip


def test_constraints_lock_agrees_with_settings():
    lock = {canon(k): v for k, v in (l.split('==') for l in (ROOT/'constraints.txt').read_text().splitlines() if '==' in l and not l.startswith('#'))}
    bad = {k: (v, lock.get(k)) for k, v in all_pins().items() if lock.get(k) != v}
    assert not bad, f"constraints.txt and settings.ini disagree (name: settings, lock): {bad}"


def test_installed_versions_are_the_pinned_ones():
    bad = {k: (v, md.version(k)) for k, v in all_pins().items() if md.version(k) != v}
    assert not bad, f"installed versions differ from settings.ini (name: pinned, installed): {bad}"


def test_kernel_is_registered():
    from jupyter_client.kernelspec import KernelSpecManager
    assert 'mlops_lib' in KernelSpecManager().find_kernel_specs(), "run `make setup`: it registers the mlops_lib kernel"


def test_benchmarks_and_tools_compile_on_this_python():
    "benchmarks/ and tools/ are run by hand, not by the suite: a syntax error of a newer Python (a nested f-string quote) went unseen."
    for f in sorted([*ROOT.glob('benchmarks/*.py'), *ROOT.glob('tools/*.py')]):
        compile(f.read_text(), str(f), 'exec')   # raises SyntaxError naming the file and line
