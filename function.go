// Package function is the deployment map: it registers every Cloud
// Function target with the Functions Framework. Google's Go buildpack builds
// this package at the module root; the handlers live in ./functions and the
// domain in ./lifecycle.
package function

import (
	ff "github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/finwell/plaid-token-lifecycle/functions"
)

func init() {
	ff.HTTP("TokenCleanup", functions.TokenCleanup)
	ff.HTTP("RevokeAllTokens", functions.RevokeAllTokens)
	ff.HTTP("TokenAnalytics", functions.TokenAnalytics)
	ff.HTTP("RevokeItem", functions.RevokeItem)
	ff.HTTP("PlaidWebhook", functions.PlaidWebhook)
	ff.HTTP("CreateLinkToken", functions.CreateLinkToken)
	ff.HTTP("ExchangePublicToken", functions.ExchangePublicToken)
	ff.HTTP("ListItems", functions.ListItems)
	ff.HTTP("VerifyItem", functions.VerifyItem)
	ff.CloudEvent("DailyCleanup", functions.DailyCleanup)
	ff.CloudEvent("WeeklyAnalytics", functions.WeeklyAnalytics)
	ff.CloudEvent("TokenStats", functions.TokenStats)
}
