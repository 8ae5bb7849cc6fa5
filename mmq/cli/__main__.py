from mmq.cli import main

raise SystemExit(main())
