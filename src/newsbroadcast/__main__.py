from newsbroadcast.cli.commands import main

raise SystemExit(main())
