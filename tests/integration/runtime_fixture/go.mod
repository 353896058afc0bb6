module example.com/runtimefixture

go 1.22
