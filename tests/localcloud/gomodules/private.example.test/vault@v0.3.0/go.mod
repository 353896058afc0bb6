module private.example.test/vault

go 1.22
