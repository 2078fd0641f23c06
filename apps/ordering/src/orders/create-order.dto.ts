import { IsInt, IsPositive, IsString, Length, Max } from 'class-validator';

export class CreateOrderDto {
  @IsString()
  @Length(1, 100)
  customerId!: string;

  @IsInt()
  @IsPositive()
  @Max(2_147_483_647) // the column's range (a PostgreSQL integer): a larger amount is a 400, not a failed INSERT
  amountCents!: number;
}
