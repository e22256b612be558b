package lifecycle

// Hooks for the pacers' tests of package lifecycle_test.

// ErrQuotaSaturatedForTest is what a user's call gets when the quota has no
// room for it.
var ErrQuotaSaturatedForTest = errQuotaSaturated

// QuotaSlotsForTest is how many slots window w of a SharedPacer at rpm has.
func QuotaSlotsForTest(rpm int, w int64) int { return len(newSlotTable(rpm, w).permits) }
