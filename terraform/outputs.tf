output "api_url" {
  description = "Base URL of the API and the console (the chart's cloud.url)."
  value       = aws_apigatewayv2_stage.default.invoke_url
}

output "table_name" {
  description = "The DynamoDB table holding every tenant's graphs and tokens."
  value       = aws_dynamodb_table.store.name
}

output "function_name" {
  description = "The Lambda function (its logs: /aws/lambda/<name>)."
  value       = aws_lambda_function.api.function_name
}
