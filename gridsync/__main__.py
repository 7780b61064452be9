from gridsync.cli import main

main()
