module github.com/ragway/ragway

go 1.26

replace github.com/ragway/ragway/plugin-sdk => ./plugin-sdk
