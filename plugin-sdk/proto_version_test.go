package sdk

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ragway/ragway/plugin-sdk/internal/pb"
)

// The handshake version lives in three places: the .proto (the contract),
// the generated code and the Go constant. They must not drift.
func TestProtocolVersionMatchesProto(t *testing.T) {
	if ProtocolVersion != int(pb.ProtocolVersion_PROTOCOL_VERSION_CURRENT) {
		t.Errorf("ProtocolVersion = %d, generated PROTOCOL_VERSION_CURRENT = %d: regenerate or bump the constant",
			ProtocolVersion, pb.ProtocolVersion_PROTOCOL_VERSION_CURRENT)
	}
	if Handshake.ProtocolVersion != ProtocolVersion {
		t.Errorf("Handshake.ProtocolVersion = %d, want ProtocolVersion %d", Handshake.ProtocolVersion, ProtocolVersion)
	}
	if _, ok := pluginSets(nil)[ProtocolVersion]; !ok {
		t.Errorf("pluginSets does not serve ProtocolVersion %d", ProtocolVersion)
	}

	src, err := os.ReadFile("proto/backend.proto")
	if err != nil {
		t.Fatal(err)
	}
	enum := regexp.MustCompile(`(?s)enum\s+ProtocolVersion\s*\{(.*?)\}`).FindSubmatch(src)
	if enum == nil {
		t.Fatal("proto/backend.proto has no enum ProtocolVersion")
	}
	m := regexp.MustCompile(`PROTOCOL_VERSION_CURRENT\s*=\s*(\d+)\s*;`).FindSubmatch(enum[1])
	if m == nil {
		t.Fatal("enum ProtocolVersion in proto/backend.proto has no PROTOCOL_VERSION_CURRENT")
	}
	if v, _ := strconv.Atoi(string(m[1])); v != ProtocolVersion {
		t.Errorf("proto/backend.proto PROTOCOL_VERSION_CURRENT = %d, Go ProtocolVersion = %d", v, ProtocolVersion)
	}
}

// APIVersion is semver; its major moves with ProtocolVersion (a breaking
// wire change is a breaking API change), compatible additions bump the minor.
func TestAPIVersionIsConsistent(t *testing.T) {
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(APIVersion) {
		t.Fatalf("APIVersion %q is not MAJOR.MINOR.PATCH", APIVersion)
	}
	major, _, _ := strings.Cut(APIVersion, ".")
	if major != strconv.Itoa(ProtocolVersion) {
		t.Errorf("APIVersion %s has major %s, ProtocolVersion is %d", APIVersion, major, ProtocolVersion)
	}
	if err := CheckAPIVersion(APIVersion); err != nil {
		t.Errorf("CheckAPIVersion(APIVersion): %v", err)
	}
}

func TestCheckAPIVersion(t *testing.T) {
	major, _, _ := strings.Cut(APIVersion, ".")
	n, _ := strconv.Atoi(major)
	tests := []struct {
		name string
		v    string
		ok   bool
	}{
		{"same", APIVersion, true},
		{"newer minor", major + ".99.0", true},
		{"newer patch", major + ".0.7", true},
		{"v prefix", "v" + APIVersion, true},
		{"major only", major, true},
		{"empty", "", false},
		{"next major", strconv.Itoa(n+1) + ".0.0", false},
		{"previous major", strconv.Itoa(n-1) + ".9.9", false},
		{"major with shared prefix", major + "0.0.0", false},
		{"garbage", "latest", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckAPIVersion(tt.v)
			if (err == nil) != tt.ok {
				t.Errorf("CheckAPIVersion(%q) = %v, want ok=%v", tt.v, err, tt.ok)
			}
			if err != nil && tt.v != "" && !strings.Contains(err.Error(), tt.v) {
				t.Errorf("error %q does not name the version %q", err, tt.v)
			}
		})
	}
}
