import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR))

# Subsystems keep their fixtures in tests/fixtures_<area>.py; each is loaded as a plugin.
pytest_plugins = sorted(p.stem for p in TESTS_DIR.glob("fixtures_*.py"))
