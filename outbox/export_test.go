package outbox

// WaitWithPoll is Wait with its poll interval as a parameter, so that tests
// can make the fallback poll too slow to be what wakes a waiter.
var WaitWithPoll = waitPool
