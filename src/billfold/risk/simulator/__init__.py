"""`billfold simulate`: a seeded, labelled PaySim-style workload played through the public
API (`generator` writes it, `driver` plays it, `evaluate` scores the answers,
`in_process` runs it all against an application in this process)."""
