import ArgumentParser

Catlip.main()
