import gc

# Loading the modules makes thousands of objects that live until exit: no collector
# passes over them while they load (~40 of them, a few ms of every command).
gc.disable()
try:
    from tidings.cli.main import main
finally:
    gc.enable()

raise SystemExit(main())
