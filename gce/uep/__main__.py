from __future__ import annotations

import sys

from gce.uep.boot import main

sys.exit(main())
