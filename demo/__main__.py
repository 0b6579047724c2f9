import sys

from demo.report import main

sys.exit(main())
