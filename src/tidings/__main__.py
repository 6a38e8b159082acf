from tidings.cli.main import main

raise SystemExit(main())
