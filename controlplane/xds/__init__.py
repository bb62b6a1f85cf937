"""The xDS v3 server: ADS over gRPC, State of the World and Delta."""
