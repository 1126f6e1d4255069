import sys

from gce.daemon.main import main

sys.exit(main())
