package pglocal

// DiesWithParent exposes diesWithParent to the external tests.
const DiesWithParent = diesWithParent
