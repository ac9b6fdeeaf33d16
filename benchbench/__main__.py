from benchbench.cli import main

raise SystemExit(main())
