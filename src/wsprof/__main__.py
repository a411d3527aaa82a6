from wsprof.cli import main

raise SystemExit(main())
