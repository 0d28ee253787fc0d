"""``python -m bridge`` is the ``kafka-jetstream-bridge`` command."""

from bridge.cli import main

raise SystemExit(main())
