from __future__ import annotations

import sys

from gce.uep.main import main

sys.exit(main())
