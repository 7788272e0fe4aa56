import sys

from dashboards.build import main

sys.exit(main())
