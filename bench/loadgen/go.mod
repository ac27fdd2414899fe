module strata/bench/loadgen

go 1.23
