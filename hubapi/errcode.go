package hubapi

// ErrorCode is one of IoT Hub's error codes: a six-digit number (HTTP status × 1000 + sub-code) with a
// name, as carried by the `iothub-errorcode` header and in error bodies.
type ErrorCode struct {
	Number int    // e.g. 404103; 0 where the hub gives the name only
	Name   string // e.g. "DeviceNotOnline"
}

// Status is the HTTP status the code is sent with.
func (c ErrorCode) Status() int {
	if c.Number == 0 {
		if s, ok := nameOnlyStatus[c.Name]; ok {
			return s
		}
		return 0
	}
	return c.Number / 1000
}

// The error codes rollout reads or the emulator sends, numbered as IoT Hub numbers them.
var (
	CodeInvalidProtocolVersion              = ErrorCode{400001, "InvalidProtocolVersion"}
	CodeInvalidOperation                    = ErrorCode{400003, "InvalidOperation"}
	CodeArgumentInvalid                     = ErrorCode{400004, "ArgumentInvalid"}
	CodeArgumentNull                        = ErrorCode{400005, "ArgumentNull"}
	CodeIotHubFormatError                   = ErrorCode{400006, "IotHubFormatError"}
	CodeDeviceDefinedMultipleTimes          = ErrorCode{400011, "DeviceDefinedMultipleTimes"}
	CodeGenericBadRequest                   = ErrorCode{0, "GenericBadRequest"}
	CodeIotHubNotFound                      = ErrorCode{401001, "IotHubNotFound"}
	CodeIotHubUnauthorizedAccess            = ErrorCode{401002, "IotHubUnauthorizedAccess"}
	CodeIotHubUnauthorized                  = ErrorCode{401003, "IotHubUnauthorized"}
	CodeIotHubQuotaExceeded                 = ErrorCode{403002, "IotHubQuotaExceeded"}
	CodeJobQuotaExceeded                    = ErrorCode{403003, "JobQuotaExceeded"}
	CodeDeviceNotFound                      = ErrorCode{404001, "DeviceNotFound"}
	CodeJobNotFound                         = ErrorCode{404002, "JobNotFound"}
	CodeModuleNotFound                      = ErrorCode{404010, "ModuleNotFound"}
	CodeDeviceNotOnline                     = ErrorCode{404103, "DeviceNotOnline"}
	CodeDeviceAlreadyExists                 = ErrorCode{409001, "DeviceAlreadyExists"}
	CodeModuleAlreadyExistsOnDevice         = ErrorCode{409301, "ModuleAlreadyExistsOnDevice"}
	CodePreconditionFailed                  = ErrorCode{412001, "PreconditionFailed"}
	CodeMessageTooLarge                     = ErrorCode{413001, "MessageTooLarge"}
	CodeGenericTooManyRequests              = ErrorCode{429000, "GenericTooManyRequests"}
	CodeThrottlingException                 = ErrorCode{429001, "ThrottlingException"}
	CodeThrottleBacklogLimitExceeded        = ErrorCode{429002, "ThrottleBacklogLimitExceeded"}
	CodeThrottlingBacklogTimeout            = ErrorCode{429003, "ThrottlingBacklogTimeout"}
	CodeThrottlingMaxActiveJobCountExceeded = ErrorCode{429004, "ThrottlingMaxActiveJobCountExceeded"}
	CodeDeviceThrottlingLimitExceeded       = ErrorCode{429005, "DeviceThrottlingLimitExceeded"}
	CodeServerError                         = ErrorCode{500001, "ServerError"}
	CodeJobCancelled                        = ErrorCode{500002, "JobCancelled"}
	CodeServiceUnavailable                  = ErrorCode{503001, "ServiceUnavailable"}
	CodePartitionNotFound                   = ErrorCode{503003, "PartitionNotFound"}
	CodeGatewayTimeout                      = ErrorCode{504101, "GatewayTimeout"}

	// CodeConfigurationNotFound and CodeConfigurationAlreadyExists answer a configuration id the hub
	// does not know and a create of one it does; their numbers are unconfirmed, so the emulator sends
	// the names with 404 and 409.
	CodeConfigurationNotFound      = ErrorCode{0, "ConfigurationNotFound"}
	CodeConfigurationAlreadyExists = ErrorCode{0, "ConfigurationAlreadyExists"}

	// CodeJobAlreadyExists answers a PUT of a job id that exists. The hub's answer to a duplicate job id
	// is unconfirmed (reference §3.1); rollout and its emulator use 409 with this name and no number.
	CodeJobAlreadyExists = ErrorCode{0, "JobAlreadyExists"}
)

// nameOnlyStatus gives the HTTP status of codes the hub sends without a number.
var nameOnlyStatus = map[string]int{"GenericBadRequest": 400, "JobAlreadyExists": 409,
	"ConfigurationNotFound": 404, "ConfigurationAlreadyExists": 409}

// knownCodes indexes every code above by name and by number.
var knownCodes = []ErrorCode{
	CodeInvalidProtocolVersion, CodeInvalidOperation, CodeArgumentInvalid, CodeArgumentNull,
	CodeIotHubFormatError, CodeDeviceDefinedMultipleTimes, CodeGenericBadRequest, CodeIotHubNotFound,
	CodeIotHubUnauthorizedAccess, CodeIotHubUnauthorized, CodeIotHubQuotaExceeded, CodeJobQuotaExceeded,
	CodeDeviceNotFound, CodeJobNotFound, CodeModuleNotFound, CodeDeviceNotOnline, CodeDeviceAlreadyExists,
	CodeModuleAlreadyExistsOnDevice,
	CodePreconditionFailed, CodeMessageTooLarge, CodeGenericTooManyRequests, CodeThrottlingException,
	CodeThrottleBacklogLimitExceeded, CodeThrottlingBacklogTimeout, CodeThrottlingMaxActiveJobCountExceeded,
	CodeDeviceThrottlingLimitExceeded, CodeServerError, CodeJobCancelled, CodeServiceUnavailable,
	CodePartitionNotFound, CodeGatewayTimeout, CodeJobAlreadyExists, CodeConfigurationNotFound,
	CodeConfigurationAlreadyExists,
}

// LookupCode finds a known code by name (case-sensitive, as the hub writes it). The second result is
// false for a name rollout does not know.
func LookupCode(name string) (ErrorCode, bool) {
	for _, c := range knownCodes {
		if c.Name == name {
			return c, true
		}
	}
	return ErrorCode{}, false
}

// LookupNumber finds a known code by number.
func LookupNumber(n int) (ErrorCode, bool) {
	for _, c := range knownCodes {
		if c.Number == n && n != 0 {
			return c, true
		}
	}
	return ErrorCode{}, false
}

// ErrorBody is the JSON body of a hub error. Message holds either "ErrorCode:<Name>;<text>" or a JSON
// string with errorCode, trackingId, message and timestampUtc; ExceptionMessage holds
// "Tracking ID:<id>-G:<n>-TimeStamp:<MM/dd/yyyy HH:mm:ss>" or is empty.
type ErrorBody struct {
	Message          string `json:"Message"`
	ExceptionMessage string `json:"ExceptionMessage"`
}

// ErrorPayload is the inner JSON object of the numeric error form.
type ErrorPayload struct {
	ErrorCode    int            `json:"errorCode"`
	TrackingID   string         `json:"trackingId"`
	Message      string         `json:"message"`
	Info         map[string]any `json:"info,omitempty"`
	TimestampUTC string         `json:"timestampUtc"`
}
