package relay

// LoseClaimResults makes r drop the result of a committed claim whenever
// lose returns true, as a connection that breaks after the claim's commit
// would. Call it before Run.
func LoseClaimResults(r *Relay, lose func() bool) { r.loseClaimResult = lose }
