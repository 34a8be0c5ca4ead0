"""`python -m benchmarks.run --quick` produces the whole table (numbers are not checked)."""
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_ROWS = 6


def test_quick_run_writes_every_row_of_the_table(tmp_path):
  output = tmp_path / "BENCHMARKS.md"
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [REPO] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
  subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", f"--output={output}"],
                 cwd=REPO, env=env, check=True, timeout=900)
  text = output.read_text()
  assert "Quick smoke run" in text
  table_rows = re.findall(r"^\| (\d) \| .* \| `python -m benchmarks\.run --rows=\w+ --quick` \|$",
                          text, flags=re.MULTILINE)
  assert sorted(set(int(n) for n in table_rows)) == list(range(1, NUM_ROWS + 1))
  for number in range(1, NUM_ROWS + 1):
    assert f"\n## {number}. " in text
  assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
