from newsbroadcast.cli import main

raise SystemExit(main())
