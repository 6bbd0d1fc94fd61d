from probe.cli import main
import sys
sys.exit(main())
