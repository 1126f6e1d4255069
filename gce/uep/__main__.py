import sys

from gce.uep.main import main

sys.exit(main())
