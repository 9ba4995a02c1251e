package main

import sdk "github.com/ragway/ragway/plugin-sdk"

func main() {
	sdk.Serve(newProxy(sdk.Logger()))
}
