from streamasr.cli import run

run()
