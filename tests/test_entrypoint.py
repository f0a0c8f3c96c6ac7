"""cvcl.entrypoint: a SIGTERM that Python drops inside a finaliser still ends the work, and the
watch on DVC's process is told of its end even while it lingers as a zombie."""

import signal
import subprocess
import sys

from cvcl.entrypoint import process_ended


def test_a_sigterm_handled_inside_a_finaliser_still_ends_the_loop(tmp_path):
    # Python prints and drops an exception raised in __del__: the handler's SystemExit is lost
    # there, and only raise_if_terminating() at the next step ends the loop
    script = tmp_path / "stage.py"
    script.write_text(
        "import gc, os, signal\n"
        "from cvcl.entrypoint import raise_if_terminating, run_stage\n"
        "class Finaliser:\n"
        "    def __del__(self):\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "def main():\n"
        "    for step in range(1000):\n"
        "        raise_if_terminating()\n"
        "        if step == 3:\n"
        "            Finaliser()\n"
        "            gc.collect()\n"
        "    print('finished', flush=True)\n"
        "run_stage(main)\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert "Exception ignored" in proc.stderr  # the handler did run inside __del__
    assert "finished" not in proc.stdout
    assert proc.returncode == 128 + signal.SIGTERM


def test_process_ended_sees_a_zombie_as_ended():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ended = process_ended(child.pid)
        assert not ended(0.05)
        child.kill()
        # not reaped yet: /proc still lists it, the pidfd says it ended
        assert ended(30)
    finally:
        child.kill()
        child.wait()
