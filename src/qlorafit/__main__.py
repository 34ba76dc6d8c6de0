from qlorafit.cli import main

raise SystemExit(main())
