"""The embedded Ray (jobs/cluster.py connect_ray without an address): every worker it starts has redaction installed
from its start, tasks' and actors' alike, without a runtime_env; the variable that names the hook is not left in the
driver's environment. Run in a process of its own, so that its Ray is not the test session's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.jobs.jobs_helpers import private_ray_tmpdir, subprocess_env

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, logging, os
import ray
from jobs.cluster import connect_ray

def redacting():
    return bool(getattr(logging.getLogRecordFactory(), "_redacting", False))

before = dict(os.environ)
embedded = connect_ray(None)

@ray.remote(num_cpus=0)
def task():
    return redacting()

@ray.remote(num_cpus=0)
class Actor:
    def probe(self):
        return redacting()

actor = Actor.remote()
result = {"embedded": embedded, "tasks": ray.get([task.remote() for _ in range(3)]),
          "actor": ray.get(actor.probe.remote()), "environment_added": sorted(set(os.environ) - set(before)),
          "job_runtime_env": ray.get_runtime_context().runtime_env}
ray.shutdown()
print(json.dumps(result))
"""


def test_embedded_workers_redact_from_their_start_without_a_runtime_env(tmp_path):
    env = subprocess_env(RAY_TMPDIR=private_ray_tmpdir(), PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["embedded"] is True
    assert result["tasks"] == [True, True, True]
    assert result["actor"] is True
    # The variable that names the hook is set only while Ray starts (Ray itself adds a few of its own).
    assert not [name for name in result["environment_added"] if "SETUP_HOOK" in name], result["environment_added"]
    assert not result["job_runtime_env"].get("worker_process_setup_hook")
