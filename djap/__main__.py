from djap.cli import main

main()
