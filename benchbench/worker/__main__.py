import sys

from benchbench.worker.core import main

raise SystemExit(main(sys.argv[1:]))
