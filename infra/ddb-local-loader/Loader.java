// LocalStack starts DynamoDB Local with `-javaagent:ddb-local-loader-0.1.jar`; in host mode it
// would download that agent. The agent has nothing to do for us, so an empty premain suffices.
public class Loader {
    public static void premain(String args) {}
}
