output "api_url" {
  description = "Base URL of the API and the console: the chart's cloud.url."
  value       = module.network_mapper.api_url
}

output "table_name" {
  description = "The DynamoDB table of the store."
  value       = module.network_mapper.table_name
}
