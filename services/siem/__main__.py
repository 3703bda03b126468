import sys

from services.siem.service import main

if __name__ == "__main__":
    sys.exit(main())
